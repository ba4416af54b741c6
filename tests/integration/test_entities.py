"""Entity routing (README: "Single-table designs"; cdc/core/entities.py) on every database.

The property: a single-table source (customers; orders with lines; orders that become
archived, or anything else, by their Type; deletes with and without an OldImage, as
each stream view delivers them) delivered shuffled, duplicated and replayed, in random
batches, converges to the source's final state: each key live in exactly the table its
last item's Type says (or in none after a REMOVE), with that item's values, and each
live order's lines those of its last version. Every example writes tables of its own
(names suffixed), with soft or hard deletes.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, Table, Text, cast, inspect, select

from cdc.app.commands.dlq import redrive
from cdc.config import Settings, load_settings, parse_database_url
from cdc.core.deadline import Deadline
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from tests.databases import Database
from tests.factories import FakeContext, insert, modify, record, remove
from tests.integration.test_convergence import CONVERGENCE

BASE = 10**20
KEY = "k" * 32

MAPPING = """
[tables.{source}]
table = "app_{suffix}"
unmatched = "document"
deletes = "{deletes}"

[tables.{source}.attributes]
Phone = {{ exclude = true }}

[tables.{source}.entities.customer]
table = "customers_{suffix}"
match = {{ attribute = "Type", value = "customer" }}
key.PK = "CUSTOMER#(?P<customer_id>\\\\d+)"
key.SK = "PROFILE"
key_columns = {{ customer_id = "bigint" }}

[tables.{source}.entities.customer.columns]
Name = "text"

[tables.{source}.entities.order]
table = "orders_{suffix}"
match = {{ attribute = "Type", value = "order" }}
key.PK = "CUSTOMER#(?P<customer_id>\\\\d+)"
key.SK = "ORDER#(?P<order_day>\\\\d{{4}}-\\\\d{{2}}-\\\\d{{2}})#(?P<order_id>\\\\d+)"
key_columns = {{ customer_id = "bigint", order_day = "date", order_id = "bigint" }}

[tables.{source}.entities.order.columns]
Total = "numeric(12,2)"

[tables.{source}.entities.order.children.Lines]
table = "order_lines_{suffix}"

[tables.{source}.entities.order.children.Lines.columns]
Sku = {{ type = "text", required = true }}
Qty = "integer"

[tables.{source}.entities.archived]
table = "archived_{suffix}"
match = {{ attribute = "Type", value = "archived" }}
key.PK = "CUSTOMER#(?P<customer_id>\\\\d+)"
key.SK = "ORDER#(?P<order_day>\\\\d{{4}}-\\\\d{{2}}-\\\\d{{2}})#(?P<order_id>\\\\d+)"
key_columns = {{ customer_id = "bigint", order_day = "date", order_id = "bigint" }}

[tables.{source}.entities.archived.columns]
Total = "numeric(12,2)"
"""


def entity_settings(
    database: Database, tmp_path: Path, suffix: str, deletes: str = "soft"
) -> Settings:
    path = tmp_path / f"mapping_{suffix}.toml"
    path.write_text(MAPPING.format(source=f"App{suffix}", suffix=suffix, deletes=deletes))
    env = {
        "CDC_CONFIG": str(path),
        "CDC_DATABASE_URL": database.url,
        "CDC_HASH_KEY": KEY,
    }
    if database.schema is not None:
        env["CDC_SCHEMA"] = database.schema
    return load_settings(env)


def process(database: Database, settings: Settings, records: list[dict[str, Any]]) -> Any:
    replicator = Replicator(database.engine, settings)
    result = replicator.process(records, Deadline.from_context(FakeContext(60_000)))
    assert result.failed == 0, result.error
    return result


def live_rows(
    database: Database, name: str, keys: list[str]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The live rows of a table, by key (text), with JSON columns as text."""
    with database.engine.connect() as conn:
        if not inspect(conn).has_table(name, schema=database.schema):
            return {}
        table = Table(name, MetaData(), autoload_with=conn, schema=database.schema)
        columns = [
            cast(c, Text).label(c.name) if c.name in ("item", "extra") else c for c in table.c
        ]
        rows = [dict(r._mapping) for r in conn.execute(select(*columns))]
    return {tuple(str(r[k]) for k in keys): r for r in rows if not r.get("_cdc_deleted", False)}


def child_rows(database: Database, name: str) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
    with database.engine.connect() as conn:
        if not inspect(conn).has_table(name, schema=database.schema):
            return {}
        table = Table(name, MetaData(), autoload_with=conn, schema=database.schema)
        found: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for r in conn.execute(select(table).order_by(*table.primary_key.columns)).mappings():
            key = (str(r["customer_id"]), str(r["order_day"]), str(r["order_id"]))
            found.setdefault(key, []).append((r["position"], r["sku"], r["qty"]))
    return found


# --- the walkthrough, step by step ---------------------------------------------------------

CUSTOMER = {"PK": "CUSTOMER#42", "SK": "PROFILE"}
ORDER = {"PK": "CUSTOMER#42", "SK": "ORDER#2026-11-26#7"}
ORDER_KEY = ("42", "2026-11-26", "7")
LINES = [{"Sku": "A-1", "Qty": 2}, {"Sku": "B-2", "Qty": 1}]


def test_items_land_in_their_entity_tables_and_move(database: Database, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = entity_settings(database, tmp_path, suffix)
    source = f"App{suffix}"
    # GIVEN a customer, an order with two lines and an item no entity takes
    process(
        database,
        settings,
        [
            insert(
                CUSTOMER,
                BASE + 1,
                {"Type": "customer", "Name": "Ada", "Phone": "555"},
                table=source,
            ),
            insert(
                ORDER,
                BASE + 2,
                {"Type": "order", "Total": Decimal("6.50"), "Lines": LINES},
                table=source,
            ),
            insert({"PK": "TENANT#1", "SK": "CONFIG"}, BASE + 3, {"Type": "config"}, table=source),
        ],
    )
    customers = live_rows(database, f"customers_{suffix}", ["customer_id"])
    assert list(customers) == [("42",)]
    assert customers[("42",)]["name"] == "Ada"
    assert json.loads(customers[("42",)]["extra"]) == {"Type": "customer"}  # no PK/SK, no Phone
    orders = live_rows(database, f"orders_{suffix}", ["customer_id", "order_day", "order_id"])
    assert list(orders) == [ORDER_KEY]
    assert Decimal(str(orders[ORDER_KEY]["total"])) == Decimal("6.50")
    assert child_rows(database, f"order_lines_{suffix}") == {
        ORDER_KEY: [(0, "A-1", 2), (1, "B-2", 1)]
    }
    app = live_rows(database, f"app_{suffix}", ["pk", "sk"])
    assert list(app) == [("TENANT#1", "CONFIG")]

    # WHEN the order is archived (its Type changes) THEN it moves, its lines go with it
    process(
        database,
        settings,
        [modify(ORDER, BASE + 5, {"Type": "archived", "Total": Decimal("6.50")}, table=source)],
    )
    assert live_rows(database, f"orders_{suffix}", ["customer_id", "order_day", "order_id"]) == {}
    assert list(
        live_rows(database, f"archived_{suffix}", ["customer_id", "order_day", "order_id"])
    ) == [ORDER_KEY]
    assert child_rows(database, f"order_lines_{suffix}") == {}

    # WHEN a late, older version of it arrives (still an order, other lines)
    result = process(
        database,
        settings,
        [
            modify(
                ORDER,
                BASE + 4,
                {"Type": "order", "Total": Decimal("1"), "Lines": LINES[:1]},
                table=source,
            )
        ],
    )
    # THEN it brings back neither the order nor its lines
    assert result.applied == 0
    assert live_rows(database, f"orders_{suffix}", ["customer_id", "order_day", "order_id"]) == {}
    assert child_rows(database, f"order_lines_{suffix}") == {}

    # WHEN the customer is removed by a KEYS_ONLY record (no image: every candidate table)
    removed = process(database, settings, [remove(CUSTOMER, BASE + 6, None, table=source)])
    assert (removed.applied, removed.stale) == (1, 0)  # the row it deleted, counted once
    assert live_rows(database, f"customers_{suffix}", ["customer_id"]) == {}
    # and a late INSERT of it cannot bring it back, in any table
    process(
        database,
        settings,
        [insert(CUSTOMER, BASE + 1, {"Type": "customer", "Name": "Ada"}, table=source)],
    )
    assert live_rows(database, f"customers_{suffix}", ["customer_id"]) == {}
    assert ("CUSTOMER#42", "PROFILE") not in live_rows(database, f"app_{suffix}", ["pk", "sk"])


def test_a_lone_late_version_cannot_land_where_the_item_never_was(
    database: Database, tmp_path: Path
) -> None:
    """The move happened first; the first version of the item arrives after it. The
    table it names has never held the key: only the tombstone left by the move stops it."""
    suffix = uuid.uuid4().hex[:8]
    settings = entity_settings(database, tmp_path, suffix, deletes="hard")
    source = f"App{suffix}"
    process(
        database,
        settings,
        [modify(ORDER, BASE + 9, {"Type": "archived", "Total": 1}, table=source)],
    )
    process(
        database,
        settings,
        [insert(ORDER, BASE + 8, {"Type": "order", "Total": 1, "Lines": LINES}, table=source)],
    )
    assert live_rows(database, f"orders_{suffix}", ["customer_id", "order_day", "order_id"]) == {}
    assert child_rows(database, f"order_lines_{suffix}") == {}
    assert list(
        live_rows(database, f"archived_{suffix}", ["customer_id", "order_day", "order_id"])
    ) == [ORDER_KEY]


def test_unmatched_items_can_be_dead_letters(database: Database, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    path = tmp_path / "m.toml"
    path.write_text(
        MAPPING.format(source=f"App{suffix}", suffix=suffix, deletes="soft").replace(
            'unmatched = "document"', 'unmatched = "dead_letter"'
        )
    )
    env = {"CDC_CONFIG": str(path), "CDC_DATABASE_URL": database.url, "CDC_HASH_KEY": KEY}
    if database.schema is not None:
        env["CDC_SCHEMA"] = database.schema
    settings = load_settings(env)
    result = process(
        database,
        settings,
        [
            insert(
                {"PK": "TENANT#1", "SK": "CONFIG"},
                BASE + 1,
                {"Type": "config"},
                table=f"App{suffix}",
            ),
            insert(CUSTOMER, BASE + 2, {"Type": "customer", "Name": "Ada"}, table=f"App{suffix}"),
        ],
    )
    assert result.dead_lettered == 1 and result.applied == 1
    letters = database.dead_letters()
    assert [letter["error_class"] for letter in letters] == ["unmatched"]
    assert "TENANT#1" in letters[0]["error_message"]
    assert 'unmatched = "document"' in letters[0]["error_message"]
    assert f"app_{suffix}" not in database.table_names()

    # WHEN the mapping sends such items to the document table and the letter is redriven
    path.write_text(MAPPING.format(source=f"App{suffix}", suffix=suffix, deletes="soft"))
    assert redrive(database.engine, load_settings(env), ids=[], all_=True, table=None) == 0
    # THEN it is routed like the stream's records: into the document table
    assert list(live_rows(database, f"app_{suffix}", ["pk", "sk"])) == [("TENANT#1", "CONFIG")]
    assert [letter["status"] for letter in database.dead_letters()] == ["resolved"]


def test_a_bad_line_dead_letters_its_order_only(database: Database, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = entity_settings(database, tmp_path, suffix)
    source = f"App{suffix}"
    other = {"PK": "CUSTOMER#43", "SK": "ORDER#2026-11-27#8"}
    result = process(
        database,
        settings,
        [
            # a line without its required Sku: the order's version cannot be built
            insert(
                ORDER, BASE + 1, {"Type": "order", "Total": 1, "Lines": [{"Qty": 1}]}, table=source
            ),
            insert(other, BASE + 2, {"Type": "order", "Total": 2, "Lines": LINES}, table=source),
        ],
    )
    assert result.dead_lettered == 1
    assert "requires attribute 'Sku'" in database.dead_letters()[0]["error_message"]
    assert list(child_rows(database, f"order_lines_{suffix}")) == [("43", "2026-11-27", "8")]


def test_a_line_with_u0000_follows_the_tables_nul_option(
    database: Database, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = entity_settings(database, tmp_path, suffix)
    line = [{"Sku": "A\x00B", "Qty": 1}]
    result = process(
        database,
        settings,
        [insert(ORDER, BASE + 1, {"Type": "order", "Lines": line}, table=f"App{suffix}")],
    )
    assert result.dead_lettered == 1
    letter = database.dead_letters()[0]
    assert (letter["error_class"], "Lines[0].Sku" in letter["error_message"]) == ("nul", True)


# --- the property --------------------------------------------------------------------------

CUSTOMERS = [{"PK": f"CUSTOMER#{n}", "SK": "PROFILE"} for n in (1, 2)]
ORDERS = [
    {"PK": "CUSTOMER#1", "SK": "ORDER#2026-11-25#1"},
    {"PK": "CUSTOMER#1", "SK": "ORDER#2026-11-26#2"},
    {"PK": "CUSTOMER#2", "SK": "ORDER#2026-11-26#3"},
]


@dataclass
class Event:
    key: dict[str, str]
    sequence: int
    item: dict[str, Any] | None  # None: a REMOVE
    old: dict[str, Any] | None  # the item before, if the stream view carries it
    with_old: bool


@dataclass
class History:
    events: list[Event] = field(default_factory=list)
    deletes: str = "soft"
    batches: list[list[int]] = field(default_factory=list)


@st.composite
def histories(draw: st.DrawFn) -> History:
    history = History(deletes=draw(st.sampled_from(["soft", "hard"])))
    last: dict[int, dict[str, Any] | None] = {}
    keys = CUSTOMERS + ORDERS
    sequence = BASE
    for _ in range(draw(st.integers(min_value=1, max_value=18))):
        which = draw(st.integers(min_value=0, max_value=len(keys) - 1))
        key = keys[which]
        sequence += draw(st.integers(min_value=1, max_value=3))
        before = last.get(which)
        if before is not None and draw(st.booleans()) and draw(st.booleans()):
            item = None  # a REMOVE
        else:
            types = (
                ["customer", "misc"] if which < len(CUSTOMERS) else ["order", "archived", "misc"]
            )
            kind = draw(st.sampled_from(types))
            item = {"Type": kind, "Name": draw(st.sampled_from(["Ada", "Bo"]))}
            if kind in ("order", "archived", "misc"):
                item["Total"] = Decimal(draw(st.sampled_from(["1", "2.50", "10.01"])))
            if kind == "order" and draw(st.booleans()):
                item["Lines"] = [
                    {"Sku": f"S{n}", "Qty": draw(st.integers(min_value=0, max_value=9))}
                    for n in range(draw(st.integers(min_value=0, max_value=3)))
                ]
        history.events.append(Event(key, sequence, item, before, draw(st.booleans())))
        last[which] = item
    order = list(range(len(history.events)))
    order += draw(st.lists(st.sampled_from(order), max_size=5))  # duplicates
    shuffled = draw(st.permutations(order))
    cuts = sorted(
        draw(st.sets(st.integers(min_value=1, max_value=max(1, len(shuffled) - 1)), max_size=4))
    )
    bounds = [0, *cuts, len(shuffled)]
    history.batches = [list(shuffled[a:b]) for a, b in itertools.pairwise(bounds) if a < b]
    history.batches.append(list(range(len(history.events))))  # a full replay, in order
    return history


def to_record(event: Event, source: str) -> dict[str, Any]:
    if event.item is None:
        old = {**event.key, **event.old} if event.with_old and event.old is not None else None
        return record("REMOVE", event.key, event.sequence, old=old, table=source)
    name = "INSERT" if event.old is None else "MODIFY"
    return record(name, event.key, event.sequence, new={**event.key, **event.item}, table=source)


# Every example writes tables of its own: the same settings as the core's property.
ENTITY_CONVERGENCE = settings(CONVERGENCE, max_examples=12)


@ENTITY_CONVERGENCE
@given(history=histories())
def test_entity_routing_converges(history: History, database: Database, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    source = f"App{suffix}"
    settings = entity_settings(database, tmp_path, suffix, history.deletes)
    for batch in history.batches:
        process(database, settings, [to_record(history.events[i], source) for i in batch])

    final: dict[tuple[str, str], Event] = {}
    for event in history.events:
        final[(event.key["PK"], event.key["SK"])] = event
    customers = live_rows(database, f"customers_{suffix}", ["customer_id"])
    orders = live_rows(database, f"orders_{suffix}", ["customer_id", "order_day", "order_id"])
    archived = live_rows(database, f"archived_{suffix}", ["customer_id", "order_day", "order_id"])
    app = live_rows(database, f"app_{suffix}", ["pk", "sk"])
    lines = child_rows(database, f"order_lines_{suffix}")
    expected: dict[str, dict[Any, Any]] = {"customer": {}, "order": {}, "archived": {}, "misc": {}}
    expected_lines: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for (pk, sk), event in final.items():
        if event.item is None:
            continue
        kind = event.item["Type"]
        customer_id = pk.split("#")[1]
        if kind == "customer":
            expected["customer"][(customer_id,)] = event.item["Name"]
        elif kind == "misc":
            expected["misc"][(pk, sk)] = event.item["Name"]
        else:
            _, day, order_id = sk.split("#")
            key = (customer_id, day, order_id)
            expected[kind][key] = event.item["Total"]
            if kind == "order" and event.item.get("Lines"):
                expected_lines[key] = [
                    (n, line["Sku"], line["Qty"]) for n, line in enumerate(event.item["Lines"])
                ]
    assert {k: r["name"] for k, r in customers.items()} == expected["customer"]
    assert {k: Decimal(str(r["total"])) for k, r in orders.items()} == expected["order"]
    assert {k: Decimal(str(r["total"])) for k, r in archived.items()} == expected["archived"]
    assert {k: json.loads(r["item"])["Name"] for k, r in app.items()} == expected["misc"]
    assert lines == expected_lines
    assert database.dead_letters() == []


def test_the_readme_walkthrough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README, "Single-table designs": the commands and what they print."""
    from cdc.app.cli import main

    examples = Path(__file__).resolve().parents[2] / "examples"
    monkeypatch.chdir(tmp_path)
    for name in ("CDC_DATABASE_URL", "CDC_SCHEMA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDC_CONFIG", str(examples / "single_table.toml"))
    monkeypatch.setenv("CDC_HASH_KEY", "0123456789abcdef0123456789abcdef")
    assert main(["replay", str(examples / "single_table" / "1-created.json")]) == 0
    assert "4 records: 4 applied, 0 stale, 0 dead-lettered, 0 failed" in capsys.readouterr().out
    assert main(["replay", str(examples / "single_table" / "2-archived-deleted.json")]) == 0
    assert "3 records: 2 applied, 1 stale, 0 dead-lettered, 0 failed" in capsys.readouterr().out
    db = Database("sqlite", make_engine(parse_database_url("sqlite:///cdc.db", "test")), None)
    try:
        keys = ["customer_id", "order_day", "order_id"]
        assert live_rows(db, "orders", keys) == {}
        assert list(live_rows(db, "archived_orders", keys)) == [ORDER_KEY]
        assert child_rows(db, "order_lines") == {}
        customer = live_rows(db, "customers", ["customer_id"])[("42",)]
        assert customer["email"] == (
            "e3e30b4d50224a4ba14084607085d072402144212a122eb4501daddd6bbe0ee3"
        )
        assert json.loads(customer["extra"]) == {"Type": "customer"}
        assert list(live_rows(db, "app", ["pk", "sk"])) == [("TENANT#1", "SETTINGS")]
    finally:
        db.engine.dispose()


def test_kinesis_records_are_routed_like_stream_records(database: Database, tmp_path: Path) -> None:
    """Kinesis Data Streams for DynamoDB as the source: the same routing, guarded by
    the versions made of creation times."""
    from tests.kinesis_factories import BASE_MS, kinsert, kmodify, kremove

    suffix = uuid.uuid4().hex[:8]
    settings = entity_settings(database, tmp_path, suffix)
    source = f"App{suffix}"
    keys = ["customer_id", "order_day", "order_id"]
    order = {"Type": "order", "Total": Decimal("3"), "Lines": LINES}
    process(
        database,
        settings,
        [
            kinsert(ORDER, BASE_MS + 1_000, order, table=source),
            kmodify(ORDER, BASE_MS + 3_000, {"Type": "archived", "Total": 3}, table=source),
            kinsert(CUSTOMER, BASE_MS + 1_000, {"Type": "customer", "Name": "Ada"}, table=source),
        ],
    )
    # a late record of the order's first days, delivered again after the move
    process(database, settings, [kmodify(ORDER, BASE_MS + 2_000, order, table=source)])
    assert live_rows(database, f"orders_{suffix}", keys) == {}
    assert child_rows(database, f"order_lines_{suffix}") == {}
    assert list(live_rows(database, f"archived_{suffix}", keys)) == [ORDER_KEY]
    process(database, settings, [kremove(CUSTOMER, BASE_MS + 4_000, table=source)])
    assert live_rows(database, f"customers_{suffix}", ["customer_id"]) == {}
