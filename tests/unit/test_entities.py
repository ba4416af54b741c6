"""Entity routing's pure part (cdc/core/entities.py) and the mapping file's entity
settings (cdc/config/mapping_file.py): which tables a key could be in, what one change
asks of each, and the one-line errors of a wrong mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import MetaData

from cdc.config import load_settings
from cdc.core.change import Change
from cdc.core.convert import parse_type
from cdc.core.entities import Routing
from cdc.core.errors import ConfigError, RecordError
from cdc.sources.dynamodb_streams.records import parse_record
from cdc.sql.backends.sqlite import SqliteBackend
from cdc.sql.replica import ReplicaSpec, entity_specs
from tests.factories import insert, modify, remove

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "single_table.toml"
KEY = "k" * 32
CUSTOMER = {"PK": "CUSTOMER#42", "SK": "PROFILE"}
ORDER = {"PK": "CUSTOMER#42", "SK": "ORDER#2026-11-26#7"}


def example_routing(unmatched: str = "document") -> Routing[ReplicaSpec]:
    config = load_settings({"CDC_CONFIG": str(EXAMPLE), "CDC_HASH_KEY": KEY}).tables["App"]
    metadata = MetaData()
    backend = SqliteBackend()
    specs = entity_specs(config, metadata, None, backend)
    documents: dict[str, ReplicaSpec] = {}

    def document(change: Change) -> ReplicaSpec:
        from cdc.sql.replica import DocumentTables

        if "App" not in documents:
            documents["App"] = DocumentTables(
                metadata, None, 64, backend.key_type, lambda _: config.options
            ).spec_for(change)
        return documents["App"]

    return Routing("App", config.entities, specs, unmatched, document, config.options)  # type: ignore[arg-type]


def change(rec: dict[str, object]) -> Change:
    return parse_record(rec, 0)


def test_the_example_declares_three_entities_and_a_child_table() -> None:
    config = load_settings({"CDC_CONFIG": str(EXAMPLE), "CDC_HASH_KEY": KEY}).tables["App"]
    assert [e.name for e in config.entities] == ["customer", "order", "archived_order"]
    order = config.entities[1]
    assert [(g.attribute, g.name, str(g.type)) for g in order.groups] == [
        ("PK", "customer_id", "bigint"),
        ("SK", "order_day", "date"),
        ("SK", "order_id", "bigint"),
    ]
    assert [(c.attribute, c.table) for c in order.children] == [("Lines", "order_lines")]
    assert config.unmatched == "document"


def test_a_key_is_a_candidate_of_the_entities_its_shape_allows() -> None:
    routing = example_routing()
    customer, unmatched = routing.candidates(change(insert(CUSTOMER, 1)).keys)
    assert [e.name for e in customer] == ["customer"] and unmatched
    orders, unmatched = routing.candidates(change(insert(ORDER, 1)).keys)
    assert [e.name for e in orders] == ["order", "archived_order"] and unmatched
    other, unmatched = routing.candidates(change(insert({"PK": "X", "SK": "Y"}, 1)).keys)
    assert other == [] and unmatched


def test_a_change_reaches_every_candidate_table_once() -> None:
    routing = example_routing()
    item = {"Type": "archived", "Total": 5}
    versions = routing.versions(change(modify(ORDER, 9, item, table="App")))
    shown = [(s.table.name, v.moved, v.deleted, v.key) for s, v in versions]
    from datetime import date

    key = (42, date(2026, 11, 26), 7)
    assert shown == [
        ("orders", True, True, key),
        ("archived_orders", False, False, key),
        ("app", True, True, ("CUSTOMER#42", "ORDER#2026-11-26#7")),
    ]


def test_a_remove_without_an_image_moves_the_key_out_of_every_candidate() -> None:
    routing = example_routing()
    versions = routing.versions(change(remove(ORDER, 9, None, table="App")))
    assert [(s.table.name, v.moved) for s, v in versions] == [
        ("orders", True),
        ("archived_orders", True),
        ("app", True),
    ]
    with_image = routing.versions(change(remove(ORDER, 9, {"Type": "order"}, table="App")))
    assert [(s.table.name, v.moved, v.deleted) for s, v in with_image] == [
        ("orders", False, True),
        ("archived_orders", True, True),
        ("app", True, True),
    ]


def test_an_unmatched_item_is_a_dead_letter_when_the_mapping_says_so() -> None:
    routing = example_routing("dead_letter")
    with pytest.raises(RecordError, match="matches no entity") as raised:
        routing.versions(change(insert(ORDER, 9, {"Type": "refund"}, table="App")))
    assert raised.value.kind == "unmatched"
    assert "ORDER#2026-11-26#7" in str(raised.value)
    # a key no entity's patterns take: nothing to delete anywhere, nothing to report
    assert routing.versions(change(remove({"PK": "X", "SK": "Y"}, 9, None, table="App"))) == []


def test_a_key_group_that_is_not_a_number_is_a_record_error() -> None:
    routing = example_routing()
    rec = insert({"PK": "CUSTOMER#42", "SK": "ORDER#2026-13-45#7"}, 9, {"Type": "order"})
    with pytest.raises(RecordError, match="order_day"):
        routing.versions(change(rec))


def test_a_record_without_its_new_image_is_an_error_not_a_delete() -> None:
    routing = example_routing()
    rec = insert(ORDER, 9, {"Type": "order"}, table="App")
    del rec["dynamodb"]["NewImage"]
    with pytest.raises(RecordError) as raised:
        routing.versions(change(rec))
    assert raised.value.kind == "missing_image"


ENTITY = """
[tables.App.entities.order]
match = {{ attribute = "Type", value = "order" }}
key.PK = "C#(?P<customer_id>\\\\d+)"
{extra}
"""


@pytest.mark.parametrize(
    ("extra", "top", "message"),
    [
        ("", 'keys = ["PK"]', "has entities and also keys/columns"),
        ('key_columns = { nope = "bigint" }', "", "which no key pattern captures"),
        ('key_columns = { customer_id = "jsonb" }', "", "key_columns.customer_id cannot be jsonb"),
        ("[tables.App.entities.order.columns]\ncustomer_id = 'text'", "", "is also a key column"),
        ("", 'unmatched = "drop"', "unmatched = 'drop'"),
        ("", 'drift = "add_columns"', "not available with entities"),
        ('table = "cdc_orders"', "", "reserves"),
        ("match2 = 1", "", "unknown setting(s) match2"),
    ],
)
def test_a_wrong_entity_mapping_is_one_clear_line(
    tmp_path: Path, extra: str, top: str, message: str
) -> None:
    path = tmp_path / "m.toml"
    path.write_text(f"[tables.App]\n{top}\n" + ENTITY.format(extra=extra))
    with pytest.raises(ConfigError) as raised:
        load_settings({"CDC_CONFIG": str(path)})
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ('{ attribute = "Type" }', "needs value"),
        ('{ key = "SK" }', "needs one of prefix or regex"),
        ('{ key = "SK", regex = "(" }', "is not a regular expression"),
        ('{ attribute = "Type", key = "SK", value = "x" }', "choose one"),
        ('"order"', "must be an inline table"),
    ],
)
def test_a_wrong_match_rule_is_named(tmp_path: Path, match: str, message: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(f'[tables.App.entities.order]\nmatch = {match}\nkey.PK = "C#(?P<id>\\\\d+)"\n')
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings({"CDC_CONFIG": str(path)})


def test_two_entities_cannot_write_one_table(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        '[tables.App.entities.a]\ntable = "t"\nkey.PK = "A#(?P<id>\\\\d+)"\n'
        '[tables.App.entities.b]\ntable = "t"\nkey.PK = "B#(?P<id>\\\\d+)"\n'
    )
    with pytest.raises(ConfigError, match="both write table 't'"):
        load_settings({"CDC_CONFIG": str(path)})


def test_an_entity_cannot_take_the_document_tables_name(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(
        '[tables.Users]\nunmatched = "dead_letter"\n'
        '[tables.Users.entities.user]\ntable = "users"\nkey.PK = "U#(?P<id>\\\\d+)"\n'
    )
    with pytest.raises(ConfigError, match="the document table of unmatched items both write"):
        load_settings({"CDC_CONFIG": str(path)})


def test_key_group_types_default_to_text(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[tables.App.entities.a]\nkey.PK = "A#(?P<name>.+)"\n')
    entity = load_settings({"CDC_CONFIG": str(path)}).tables["App"].entities[0]
    assert entity.groups[0].type == parse_type("text")
    assert entity.table == "a"
